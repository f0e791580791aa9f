"""Build hook for the optional native OTLP decoder; all other metadata lives in pyproject.toml.

``optional=True``: where no C compiler or Python headers exist the install still succeeds and
``collectors.otlp`` falls back to the upb decoder.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collectors._otlp_native",
            ["collectors/_otlp_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
