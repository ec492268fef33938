'use strict';
// The test function: one SQS SendMessage and one S3 PutObject (AWS SDK v3) per invocation, to the queue
// and bucket the event names. The endpoint and credentials come from the environment (AWS_ENDPOINT_URL).
const { SQSClient, SendMessageCommand } = require('@aws-sdk/client-sqs');
const { S3Client, PutObjectCommand } = require('@aws-sdk/client-s3');

const sqs = new SQSClient({});
const s3 = new S3Client({ forcePathStyle: true });

exports.handler = async (event) => {
  await sqs.send(new SendMessageCommand({ QueueUrl: event.queueUrl, MessageBody: event.secret }));
  await s3.send(new PutObjectCommand({ Bucket: event.bucket, Key: 'orders/1.json', Body: event.secret }));
  return { sent: 2 };
};
