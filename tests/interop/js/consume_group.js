// KafkaJS group consumer, driven by tests/interop/pending/test_kafkajs_group.py (KafkaJS
// consumers only work in a consumer group, which the broker does not have yet).
// Usage: node consume_group.js '{"brokers": [...], "topic": "t", "groupId": "g", "count": 300}'
// Reads `count` messages from the beginning and prints one JSON line:
// [{partition, offset, key, value, headers}, ...].
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const toStderr = () => ({ namespace, label, log }) =>
  process.stderr.write(`${label} [${namespace}] ${log.message} ${JSON.stringify(log)}\n`);

async function main() {
  const opts = JSON.parse(process.argv[2]);
  const kafka = new Kafka({
    clientId: 'rill-interop-kafkajs',
    brokers: opts.brokers,
    logLevel: logLevel.WARN,
    logCreator: toStderr,
  });
  const consumer = kafka.consumer({ groupId: opts.groupId });
  await consumer.connect();
  await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
  const seen = [];
  await new Promise((resolve, reject) => {
    // KafkaJS reports a consumer that gave up as an event, not as a rejected run().
    consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error));
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          seen.push({
            partition,
            offset: message.offset,
            key: message.key && message.key.toString(),
            value: message.value && message.value.toString(),
            headers: Object.fromEntries(Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])),
          });
          if (seen.length >= opts.count) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => {
  process.stderr.write(`kafkajs failed: ${err.stack || err}\n`);
  process.exit(1);
});
