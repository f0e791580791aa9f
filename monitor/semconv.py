"""Attribute keys: the one place span attribute names are spelled.

The SDK emits the current OpenTelemetry GenAI conventions (content as ``gen_ai.input.messages`` /
``gen_ai.output.messages`` JSON strings) plus ``llm_monitor.*`` keys for what those conventions lack
(span kind of hand-made spans, prompt name/version, captured function inputs/outputs, tags).
The collector reads the same constants, so a rename here changes both sides at once.

Reference: ``shared/reference/otel-llm-conventions.md`` §1 (OTel GenAI) and §6 (mapping table).
"""

from __future__ import annotations

# --- OpenTelemetry GenAI (current generation, >= v1.37) ---------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # deprecated predecessor of gen_ai.provider.name
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # deprecated
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # deprecated
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
GEN_AI_PROMPT = "gen_ai.prompt"  # oldest generation: plain string
GEN_AI_COMPLETION = "gen_ai.completion"  # oldest generation: plain string

# Well-known gen_ai.operation.name values.
OP_CHAT = "chat"
OP_TEXT_COMPLETION = "text_completion"
OP_GENERATE_CONTENT = "generate_content"
OP_EMBEDDINGS = "embeddings"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"
OP_CREATE_AGENT = "create_agent"
OP_INVOKE_WORKFLOW = "invoke_workflow"
OP_RETRIEVAL = "retrieval"
OP_PLAN = "plan"

# --- generic OpenTelemetry keys --------------------------------------------------------------------
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
USER_ID = "user.id"
SESSION_ID = "session.id"
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
DEPLOYMENT_ENVIRONMENT_NAME = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT = "deployment.environment"  # older name
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

# --- llm-monitor's own keys (what the GenAI conventions lack) ---------------------------------------
LLM_MONITOR_PREFIX = "llm_monitor."
LLM_MONITOR_SPAN_KIND = "llm_monitor.span.kind"  # chain|agent|tool|retriever|llm|embedding|other
LLM_MONITOR_INPUT = "llm_monitor.input"  # JSON of a decorated function's arguments (size-capped)
LLM_MONITOR_OUTPUT = "llm_monitor.output"  # JSON of its return value (size-capped)
LLM_MONITOR_PROMPT_NAME = "llm_monitor.prompt.name"
LLM_MONITOR_PROMPT_VERSION = "llm_monitor.prompt.version"
LLM_MONITOR_PROMPT_TEMPLATE = "llm_monitor.prompt.template"
LLM_MONITOR_PROMPT_VARIABLES = "llm_monitor.prompt.variables"  # JSON object
LLM_MONITOR_TAGS = "llm_monitor.tags"  # string[]
LLM_MONITOR_METADATA_PREFIX = "llm_monitor.metadata."
LLM_MONITOR_PROJECT = "llm_monitor.project"  # resource attribute: which project the app reports to
# what our own instrumentation failed to record on this span (its bug, logged once): "request_attributes"
LLM_MONITOR_TELEMETRY_ERROR = "llm_monitor.telemetry.error"

# Instrumentation scope names our SDK uses (the collector recognises its own spans by them too).
SCOPE_PREFIX = "llm_monitor"

# Canonical span kinds (DESIGN §2, `spans.kind`).
KINDS = (
    "llm",
    "embedding",
    "chain",
    "agent",
    "tool",
    "retriever",
    "reranker",
    "guardrail",
    "evaluator",
    "other",
)

# --- added with the SDK (v1) -----------------------------------------------------------------------
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT = "openai.response.system_fingerprint"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"

# Well-known gen_ai.provider.name values the SDK emits.
PROVIDER_OPENAI = "openai"
PROVIDER_AZURE_OPENAI = "azure.ai.openai"
PROVIDER_AWS_BEDROCK = "aws.bedrock"
PROVIDER_ANTHROPIC = "anthropic"
PROVIDER_GCP_VERTEX_AI = "gcp.vertex_ai"

# --- added with the OpenAI Responses API instrumentation ------------------------------------------
OPENAI_API_TYPE = "openai.api.type"  # chat_completions | responses (OTel OpenAI refinement)
ERROR_TYPE_OTHER = "_OTHER"  # error.type fallback when the provider gives no code
LLM_MONITOR_OPENAI_PREVIOUS_RESPONSE_ID = "llm_monitor.openai.previous_response_id"

# --- added with the LangChain instrumentation -------------------------------------------------------
LLM_MONITOR_AGENT_ACTION_EVENT = "llm_monitor.agent.action"  # span event: an agent picked a tool
LLM_MONITOR_AGENT_FINISH_EVENT = "llm_monitor.agent.finish"  # span event: an agent returned
LLM_MONITOR_AGENT_LOG = "llm_monitor.agent.log"  # the agent's reasoning text for an action
LLM_MONITOR_RETRIEVAL_DOCUMENT_COUNT = "llm_monitor.retrieval.document_count"

# --- read by the format analyzer (monitor/analyzers/format.py) --------------------------------------
LLM_MONITOR_OUTPUT_SCHEMA = "llm_monitor.output.schema"  # JSON-schema string the output must satisfy
GEN_AI_OPENAI_REQUEST_RESPONSE_FORMAT = "gen_ai.openai.request.response_format"  # deprecated: json_object…
GEN_AI_REQUEST_STRUCTURED_OUTPUT_SCHEMA = "gen_ai.request.structured_output_schema"  # OpenLLMetry
LLM_INVOCATION_PARAMETERS = "llm.invocation_parameters"  # OpenInference: JSON of the request parameters
LANGFUSE_MODEL_PARAMETERS = "langfuse.observation.model.parameters"  # Langfuse: JSON of the parameters

# --- content keys of other conventions (the SDK's export policy drops them under capture_content=False) ---
OPENINFERENCE_INPUT_VALUE = "input.value"
OPENINFERENCE_OUTPUT_VALUE = "output.value"
OPENINFERENCE_INPUT_MESSAGES_PREFIX = "llm.input_messages."
OPENINFERENCE_OUTPUT_MESSAGES_PREFIX = "llm.output_messages."
OPENINFERENCE_PROMPTS = "llm.prompts"
OPENINFERENCE_PROMPT_TEMPLATE_PREFIX = "llm.prompt_template."
TRACELOOP_ENTITY_INPUT = "traceloop.entity.input"
TRACELOOP_ENTITY_OUTPUT = "traceloop.entity.output"
LANGFUSE_OBSERVATION_INPUT = "langfuse.observation.input"
LANGFUSE_OBSERVATION_OUTPUT = "langfuse.observation.output"
OPENLIT_CONTENT_PROMPT = "gen_ai.content.prompt"
OPENLIT_CONTENT_COMPLETION = "gen_ai.content.completion"
GEN_AI_EVENT_CONTENT = "gen_ai.event.content"
EVENT_CONTENT = "content"  # body keys of the older generation's content events (gen_ai.user.message …)
EVENT_MESSAGE = "message"
