'use strict';
// A stand-in for the Lambda Node runtime, started as `otel-handler node runtime.js` (the exec wrapper has put
// the layer's wrapper.js into NODE_OPTIONS, so it is loaded first): requires the handler named by _HANDLER
// from LAMBDA_TASK_ROOT, invokes it once with the event in EVENT and a Lambda context, prints the result,
// and exits at once, as a frozen function would: spans reach the endpoint only if the invocation flushed them.
const path = require('path');

const [file, name] = process.env._HANDLER.split('.', 2);
const handler = require(path.resolve(process.env.LAMBDA_TASK_ROOT, file))[name];
const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME;
const context = {
  functionName,
  functionVersion: '$LATEST',
  invokedFunctionArn: process.env.INVOKED_FUNCTION_ARN,
  memoryLimitInMB: '128',
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
  logGroupName: `/aws/lambda/${functionName}`,
  logStreamName: '2026/12/07/[$LATEST]0123456789abcdef',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 30000,
};

Promise.resolve(handler(JSON.parse(process.env.EVENT), context)).then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  },
  (error) => {
    console.error(error);
    process.exit(1);
  }
);
