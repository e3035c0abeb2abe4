"""A real external producer: writes alert files to a Kafka topic with confluent-kafka.

Keys are the survey-qualified object keys; the partitioner is murmur2_random, which is Kafka's
Java default (confluent-kafka's own default, consistent_random, is CRC32 and would not match).

usage: produce.py BOOTSTRAP TOPIC SCHEMA_DIR [--rate N] [--raw] FILE...
  --rate N: produce at most N packets per second (a continuous stream for failover tests).
  --raw: the following FILE arguments are sent as they are, keyed by their file name (for
         corrupt or unknown-schema packets that have no decodable key).
"""
import sys
import time

from confluent_kafka import Producer

import alerts

bootstrap, topic, schema_dir = sys.argv[1:4]
schemas = alerts.lsst_schemas(schema_dir)
# Not idempotent, one request in flight. Under load the test broker (nisshi 0.8.1) was seen
# answering an idempotent producer "out of order sequence number" mid-stream — even with one
# request in flight, apparently when another client (a node starting) took a producer id — and
# an idempotent producer must treat that as fatal, which failed tests that had nothing to do with
# it. Without idempotence the broker checks no sequence; with one request in flight, librdkafka's
# retries keep the order. A retry after a lost acknowledgement could duplicate a record — on
# loopback, not seen; the state would not change (merges are idempotent), only the counts tests
# wait for.
p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
    }
)
errors = []


def report(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        print(f"{msg.key().decode()}\t{msg.partition()}\t{msg.offset()}", flush=True)


raw = False
rate = None
args = iter(sys.argv[4:])
started = time.monotonic()
sent = 0
for f in args:
    if f == "--raw":
        raw = True
        continue
    if f == "--rate":
        rate = float(next(args))
        continue
    if rate:
        ahead = started + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    sent += 1
    with open(f, "rb") as fh:
        data = fh.read()
    key = f.rsplit("/", 1)[-1] if raw else alerts.object_key(alerts.read_packet(data, schemas))
    p.produce(topic, value=data, key=key.encode(), on_delivery=report)
    p.poll(0)
left = p.flush(30)
if errors or left:
    sys.exit(f"produce failed: {errors[:3]} ({left} undelivered)")
