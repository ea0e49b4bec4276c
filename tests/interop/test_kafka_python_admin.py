"""kafka-python's admin client creates, describes and deletes topics (it asks
Metadata v8+ for authorized operations and needs real ones back)."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from helpers import unique_topic
from test_kafka_python import WAIT_MS, create


@pytest.fixture
def kafka_admin(rill):
    client = KafkaAdminClient(bootstrap_servers=rill.bootstrap, request_timeout_ms=WAIT_MS)
    yield client
    client.close()


def test_admin_creates_describes_and_deletes_topics(rill, kafka_admin):
    topic = unique_topic("kpy-admin")

    create(kafka_admin, topic, partitions=4, configs={"retention.ms": "3600000"})
    with pytest.raises(TopicAlreadyExistsError):
        kafka_admin.create_topics([NewTopic(topic, 1, 1)], timeout_ms=WAIT_MS)
    [described] = kafka_admin.describe_topics([topic])
    [config_response] = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    listed_before = kafka_admin.list_topics()
    deleted = kafka_admin.delete_topics([topic], timeout_ms=WAIT_MS)
    listed_after = kafka_admin.list_topics()

    assert described["topic"] == topic and described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2, 3]
    assert all(p["error_code"] == 0 and p["replicas"] == [p["leader"]] for p in described["partitions"])
    [(error_code, _message, _type, name, entries)] = config_response.resources
    assert (error_code, name) == (0, topic)
    values = {entry[0]: entry[1] for entry in entries}
    assert values["retention.ms"] == "3600000"
    assert topic in listed_before
    assert [(name, code) for name, code, *_ in deleted.topic_error_codes] == [(topic, 0)]
    assert topic not in listed_after
