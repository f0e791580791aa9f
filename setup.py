"""Build hook for the optional native extensions; all other metadata lives in pyproject.toml.

``optional=True``: where no C compiler or Python headers exist the install still succeeds;
``collectors.otlp`` then falls back to the upb decoder, ``collectors.normalize`` to its Python mapping and
``collectors.native`` to its Python encoder, and the SDK's deferred model calls
(``monitor.instrumentation._fastcall``) to their Python request path.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "collectors._otlp_native",
            ["collectors/_otlp_native.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "collectors._normalize_native",
            ["collectors/_normalize_native.c"],
            optional=True,
            # -ffp-contract=off: the costs it computes must be Python's float operations, none fused
            extra_compile_args=[*FLAGS, "-ffp-contract=off"],
        ),
        Extension(
            "collectors._native_block",
            ["collectors/_native_block.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "monitor.instrumentation._fastcall",
            ["monitor/instrumentation/_fastcall.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
    ]
)
