'use strict';
// The layer's tracer, loaded before the function (otel-handler adds `--require /opt/nodejs/wrapper.js` to
// NODE_OPTIONS). Spans of the invocation (the aws-lambda instrumentation's SERVER span) and of its AWS SDK
// calls (v2 and v3, the aws-sdk instrumentation) go through a BatchSpanProcessor to the OTLP/HTTP protobuf
// exporter at OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (`aws-topology traces serve`: http://HOST:8126/v1/traces or
// /open-telemetry). The aws-lambda instrumentation force-flushes this provider at the end of every invocation,
// before the runtime freezes the function.
const { diag, DiagConsoleLogger, DiagLogLevel } = require('@opentelemetry/api');
const { NodeTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { AwsInstrumentation } = require('@opentelemetry/instrumentation-aws-sdk');
const { AwsLambdaInstrumentation } = require('@opentelemetry/instrumentation-aws-lambda');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { ATTR_SERVICE_NAME } = require('@opentelemetry/semantic-conventions');

// The call inputs that name the target of an SDK call, as the StackState layer's `aws.request.*` attributes.
// Only these are copied: other inputs (message bodies, object contents, items) may hold data.
const REQUEST_ATTRIBUTES = {
  Bucket: 'aws.request.bucket', // S3
  TopicArn: 'aws.request.topic.arn', // SNS
  FunctionName: 'aws.request.function.name', // Lambda
  stateMachineArn: 'aws.request.state.machine.arn', // Step Functions
  QueueUrl: 'aws.request.queue.url', // SQS
  TableName: 'aws.request.table.name', // DynamoDB
  StreamName: 'aws.request.stream.name', // Kinesis
  StreamARN: 'aws.request.stream.arn', // Kinesis
};

/** The aws-sdk preRequestHook: the target-naming inputs of the call, strings only. */
function requestAttributes(span, { request }) {
  const input = request.commandInput || {};
  for (const [key, attribute] of Object.entries(REQUEST_ATTRIBUTES)) {
    if (typeof input[key] === 'string') span.setAttribute(attribute, input[key]);
  }
}

/** The aws-lambda requestHook: the invoked function's ARN and account on the entry span. */
function functionAttributes(span, { context }) {
  const arn = context && context.invokedFunctionArn;
  if (typeof arn !== 'string') return;
  span.setAttribute('faas.id', arn);
  span.setAttribute('cloud.resource_id', arn);
  const account = arn.split(':')[4];
  if (account) span.setAttribute('cloud.account.id', account);
}

function resource() {
  const env = process.env;
  const attributes = {
    [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME || env.AWS_LAMBDA_FUNCTION_NAME || 'unknown_service:node',
    'cloud.provider': 'aws',
    'cloud.platform': 'aws_lambda',
    'cloud.region': env.AWS_REGION,
    'faas.name': env.AWS_LAMBDA_FUNCTION_NAME,
    'faas.version': env.AWS_LAMBDA_FUNCTION_VERSION,
  };
  return resourceFromAttributes(
    Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== undefined))
  );
}

function start() {
  const level = DiagLogLevel[(process.env.OTEL_LOG_LEVEL || '').toUpperCase()];
  if (level !== undefined) diag.setLogger(new DiagConsoleLogger(), level);
  const provider = new NodeTracerProvider({
    resource: resource(),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register();
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new AwsInstrumentation({ preRequestHook: requestAttributes, suppressInternalInstrumentation: true }),
      new AwsLambdaInstrumentation({ requestHook: functionAttributes }),
    ],
  });
}

try {
  start();
} catch (error) {
  // A broken tracer must not break the function: it runs untraced.
  console.error('otel-layer: tracing is off:', error);
}

module.exports = { REQUEST_ATTRIBUTES, requestAttributes, functionAttributes };
