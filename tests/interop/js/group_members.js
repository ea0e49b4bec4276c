// Several KafkaJS consumers in one group, driven by tests/interop/test_groups_kafkajs.py.
// Usage: node group_members.js '{"brokers": [...], "topic": "t", "groupId": "g", "members": 3, "total": 600}'
// Runs `members` consumers until together they have read `total` distinct messages and
// every partition is assigned, then prints one JSON line:
// {"assignments": [[partition, ...], ...], "messages": [[partition, offset], ...]}.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const toStderr = () => ({ namespace, label, log }) =>
  process.stderr.write(`${label} [${namespace}] ${log.message} ${JSON.stringify(log)}\n`);

async function main() {
  const opts = JSON.parse(process.argv[2]);
  const kafka = new Kafka({
    clientId: 'rill-interop-kafkajs-group',
    brokers: opts.brokers,
    logLevel: logLevel.WARN,
    logCreator: toStderr,
  });
  const seen = new Set();
  const assignments = Array.from({ length: opts.members }, () => []);
  const consumers = [];
  let finish;
  // The assignments when every partition was assigned once; later ones
  // (while the members disconnect one by one) are rebalances of the exit.
  let settled;
  const finished = new Promise((resolve, reject) => {
    finish = { resolve, reject };
  });
  const check = () => {
    const assigned = assignments.flat();
    const everyoneHasSome = assignments.every((a) => a.length > 0);
    const once = assigned.length === opts.partitions && new Set(assigned).size === opts.partitions;
    if (seen.size >= opts.total && everyoneHasSome && once) {
      settled = settled || assignments.map((a) => [...a]);
      finish.resolve();
    }
  };
  for (let i = 0; i < opts.members; i++) {
    const consumer = kafka.consumer({ groupId: opts.groupId, heartbeatInterval: 500 });
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      assignments[i] = event.payload.memberAssignment[opts.topic] || [];
      check();
    });
    consumer.on(consumer.events.CRASH, (event) => finish.reject(event.payload.error));
    await consumer.connect();
    await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.add(`${partition}:${message.offset}`);
        check();
      },
    });
    consumers.push(consumer);
  }
  await finished;
  for (const consumer of consumers) {
    await consumer.disconnect();
  }
  const messages = [...seen].map((s) => s.split(':').map(Number));
  process.stdout.write(JSON.stringify({ assignments: settled, messages }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`kafkajs failed: ${err.stack || err}\n`);
  process.exit(1);
});
