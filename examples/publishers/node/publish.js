// Publish one inspection result, as an envelope message, to MQTT and to Kafka.
//
// A camera program would call buildMessage once per frame. This one sends one message to each
// broker and exits 0 once both brokers acknowledged it (MQTT PUBACK at QoS 1, Kafka acks=all),
// or exits 1 with the reason.
//
// Settings come from the environment (defaults suit the project's local brokers):
// MQTT_URL, KAFKA_BOOTSTRAP_SERVERS, MQTT_TOPIC, KAFKA_TOPIC, EVENT_ID_PREFIX, IMAGE, SCHEMA.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { ProduceAcks, Producer, stringSerializers } from '@platformatic/kafka'
import Ajv2020 from 'ajv/dist/2020.js'
import mqtt from 'mqtt'

const here = dirname(fileURLToPath(import.meta.url))
const TIMEOUT_MS = 30_000

const setting = (name, fallback) => process.env[name] || fallback

// A quality-check envelope: one scratch found on a 640x480 frame, the frame itself attached.
function buildMessage (eventId, jpeg) {
  return {
    event_type: 'quality_check',
    use_case: 'qc',
    event_id: eventId,
    timestamp: new Date().toISOString(),
    device_id: 'cam-1',
    qc_result: 'fail',
    custom_metadata: { publisher: 'node' },
    predictions: {
      image: { width: 640, height: 480 },
      predictions: [
        { x: 320, y: 240, width: 80, height: 60, confidence: 0.92, class: 'scratch', class_id: 1 }
      ]
    },
    input_image: { base64: jpeg.toString('base64') }
  }
}

// Publish at QoS 1; publishAsync resolves once the broker's PUBACK arrived.
async function publishMqtt (url, topic, payload) {
  const client = await mqtt.connectAsync(url, {
    clientId: `example-publisher-${process.pid}`,
    connectTimeout: TIMEOUT_MS,
    reconnectPeriod: 0
  })
  try {
    await client.publishAsync(topic, payload, { qos: 1 })
  } finally {
    await client.endAsync()
  }
}

// Produce with acks=all; send resolves once the partition leader and its replicas have the record.
async function publishKafka (bootstrap, topic, key, payload) {
  const producer = new Producer({
    clientId: `example-publisher-${process.pid}`,
    bootstrapBrokers: bootstrap.split(','),
    serializers: stringSerializers,
    // As librdkafka and the Java client do where the broker allows it.
    autocreateTopics: true,
    timeout: TIMEOUT_MS
  })
  try {
    await producer.send({ messages: [{ topic, key, value: payload }], acks: ProduceAcks.ALL })
  } finally {
    await producer.close()
  }
}

async function main () {
  const schemaPath = setting('SCHEMA', join(here, '../../../schemas/inference-message.schema.json'))
  const jpeg = readFileSync(setting('IMAGE', join(here, '../frame.jpg')))
  const prefix = setting('EVENT_ID_PREFIX', 'node-example')
  const validate = new Ajv2020({
    allErrors: true,
    // The schema states "object" once per anyOf branch, not beside every keyword.
    strictTypes: false
  }).compile(JSON.parse(readFileSync(schemaPath, 'utf8')))

  for (const transport of ['mqtt', 'kafka']) {
    const message = buildMessage(`${prefix}-${transport}`, jpeg)
    // Refuse to publish what the consumer would dead-letter.
    if (!validate(message)) {
      throw new Error(`message does not match the schema: ${JSON.stringify(validate.errors)}`)
    }
    const payload = JSON.stringify(message)
    if (transport === 'mqtt') {
      await publishMqtt(setting('MQTT_URL', 'mqtt://127.0.0.1:1883'), setting('MQTT_TOPIC', 'factory/node/inspection'), payload)
    } else {
      await publishKafka(
        setting('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092'),
        setting('KAFKA_TOPIC', 'factory.node.inspection'),
        'cam-1',
        payload
      )
    }
    console.log(`published ${message.event_id} to ${transport}`)
  }
}

main().catch((error) => {
  console.error(`error: ${error.message}`)
  process.exit(1)
})
