// KafkaJS producer and admin against a broker, driven by tests/interop/test_kafkajs.py.
// Usage: node produce.js '{"brokers": ["127.0.0.1:9092"], "topic": "t", "partitions": 3, "count": 300,
//                          "acks": -1, "compression": "gzip" or null}'
// Creates the topic, sends `count` keyed messages with headers (message i goes to partition
// i % partitions, in batches of 50), then prints one JSON line on stdout: what the producer
// was told for each batch, and what the admin client reads back as offsets.
'use strict';

const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

// KafkaJS logs to stdout by default; the test reads stdout as JSON, so logs go to stderr.
const toStderr = () => ({ namespace, label, log }) =>
  process.stderr.write(`${label} [${namespace}] ${log.message} ${JSON.stringify(log)}\n`);

async function main() {
  const opts = JSON.parse(process.argv[2]);
  const kafka = new Kafka({
    clientId: 'rill-interop-kafkajs',
    brokers: opts.brokers,
    logLevel: logLevel.WARN,
    logCreator: toStderr,
    retry: { retries: 3 },
  });
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await admin.connect();
  await producer.connect();
  try {
    const created = await admin.createTopics({
      topics: [{ topic: opts.topic, numPartitions: opts.partitions, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    // KafkaJS has gzip built in; its other codecs need plugins this project does not install.
    const compression = opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
    const batches = [];
    const startedMs = Date.now();
    for (let start = 0; start < opts.count; start += 50) {
      const messages = [];
      for (let i = start; i < Math.min(start + 50, opts.count); i++) {
        messages.push({
          key: `k${i}`,
          value: `v${i}`,
          partition: i % opts.partitions,
          headers: { index: `${i}` },
        });
      }
      const metadata = await producer.send({ topic: opts.topic, acks: opts.acks, compression, messages });
      batches.push(metadata);
    }
    const offsets = await admin.fetchTopicOffsets(opts.topic);
    const offsetsByTime = await admin.fetchTopicOffsetsByTimestamp(opts.topic, startedMs - 60000);
    const topicMetadata = await admin.fetchTopicMetadata({ topics: [opts.topic] });
    process.stdout.write(JSON.stringify({ created, batches, offsets, offsetsByTime, topicMetadata }) + '\n');
  } finally {
    await producer.disconnect();
    await admin.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(`kafkajs failed: ${err.stack || err}\n`);
  process.exit(1);
});
