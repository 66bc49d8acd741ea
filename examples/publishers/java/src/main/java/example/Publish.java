package example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.SpecVersion;
import com.networknt.schema.ValidationMessage;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.eclipse.paho.client.mqttv3.MqttClient;
import org.eclipse.paho.client.mqttv3.MqttConnectOptions;
import org.eclipse.paho.client.mqttv3.MqttException;
import org.eclipse.paho.client.mqttv3.persist.MemoryPersistence;

/**
 * Publishes one inspection result, as an envelope message, to MQTT and to Kafka.
 *
 * <p>A camera program would call {@link #buildMessage} once per frame. This one sends one message
 * to each broker and exits 0 once both brokers acknowledged it (MQTT PUBACK at QoS 1, Kafka
 * acks=all), or exits 1 with the reason.
 *
 * <p>Settings come from the environment (defaults suit the project's local brokers): MQTT_URL,
 * KAFKA_BOOTSTRAP_SERVERS, MQTT_TOPIC, KAFKA_TOPIC, EVENT_ID_PREFIX, IMAGE, SCHEMA.
 */
public final class Publish {
  private static final int TIMEOUT_SECONDS = 30;
  private static final ObjectMapper JSON = new ObjectMapper();

  private Publish() {}

  private static String setting(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  /** A quality-check envelope: one scratch found on a 640x480 frame, the frame itself attached. */
  static Map<String, Object> buildMessage(String eventId, byte[] jpeg) {
    Map<String, Object> box = new LinkedHashMap<>();
    box.put("x", 320);
    box.put("y", 240);
    box.put("width", 80);
    box.put("height", 60);
    box.put("confidence", 0.92);
    box.put("class", "scratch");
    box.put("class_id", 1);
    Map<String, Object> message = new LinkedHashMap<>();
    message.put("event_type", "quality_check");
    message.put("use_case", "qc");
    message.put("event_id", eventId);
    message.put("timestamp", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
    message.put("device_id", "cam-1");
    message.put("qc_result", "fail");
    message.put("custom_metadata", Map.of("publisher", "java"));
    message.put(
        "predictions",
        Map.of("image", Map.of("width", 640, "height", 480), "predictions", List.of(box)));
    message.put("input_image", Map.of("base64", Base64.getEncoder().encodeToString(jpeg)));
    return message;
  }

  private static JsonSchema loadSchema(Path path) throws IOException {
    try (InputStream schema = Files.newInputStream(path)) {
      return JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012).getSchema(schema);
    }
  }

  /** Publishes at QoS 1; {@code publish} returns once the broker's PUBACK arrived. */
  private static void publishMqtt(String url, String topic, byte[] payload) throws MqttException {
    MqttClient client =
        new MqttClient(
            url.replace("mqtt://", "tcp://"),
            "example-publisher-" + ProcessHandle.current().pid(),
            new MemoryPersistence());
    MqttConnectOptions options = new MqttConnectOptions();
    options.setConnectionTimeout(TIMEOUT_SECONDS);
    client.setTimeToWait(TIMEOUT_SECONDS * 1000L);
    client.connect(options);
    try {
      client.publish(topic, payload, 1, false);
    } finally {
      client.disconnect();
      client.close();
    }
  }

  /** Produces with acks=all and waits for the broker's answer. */
  private static void publishKafka(String bootstrap, String topic, String key, byte[] payload)
      throws Exception {
    Properties settings = new Properties();
    settings.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    settings.put(ProducerConfig.ACKS_CONFIG, "all");
    // The whole send, retries included, is bounded; one request must fit in it (linger + request).
    settings.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, TIMEOUT_SECONDS * 1000);
    settings.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, TIMEOUT_SECONDS * 1000 / 3);
    settings.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, TIMEOUT_SECONDS * 1000);
    try (KafkaProducer<String, byte[]> producer =
        new KafkaProducer<>(settings, new StringSerializer(), new ByteArraySerializer())) {
      producer.send(new ProducerRecord<>(topic, key, payload)).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
    }
  }

  private static void run() throws Exception {
    JsonSchema schema =
        loadSchema(Path.of(setting("SCHEMA", "../../../schemas/inference-message.schema.json")));
    byte[] jpeg = Files.readAllBytes(Path.of(setting("IMAGE", "../frame.jpg")));
    String prefix = setting("EVENT_ID_PREFIX", "java-example");
    for (String transport : List.of("mqtt", "kafka")) {
      String eventId = prefix + "-" + transport;
      byte[] payload = JSON.writeValueAsBytes(buildMessage(eventId, jpeg));
      // Refuse to publish what the consumer would dead-letter.
      JsonNode document = JSON.readTree(payload);
      Set<ValidationMessage> problems = schema.validate(document);
      if (!problems.isEmpty()) {
        throw new IllegalStateException("message does not match the schema: " + problems);
      }
      if (transport.equals("mqtt")) {
        publishMqtt(
            setting("MQTT_URL", "mqtt://127.0.0.1:1883"),
            setting("MQTT_TOPIC", "factory/java/inspection"),
            payload);
      } else {
        publishKafka(
            setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            setting("KAFKA_TOPIC", "factory.java.inspection"),
            "cam-1",
            payload);
      }
      System.out.println("published " + eventId + " to " + transport);
    }
  }

  /** Exits 0 when both brokers acknowledged their message, 1 with the reason otherwise. */
  public static void main(String[] args) {
    try {
      run();
    } catch (Exception error) {
      StringBuilder reason = new StringBuilder("error: ").append(error);
      for (Throwable cause = error.getCause(); cause != null; cause = cause.getCause()) {
        reason.append("\n  caused by: ").append(cause);
      }
      System.err.println(reason);
      System.exit(1);
    }
  }
}
