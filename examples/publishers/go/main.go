// Command publish sends one inspection result, as an envelope message, to MQTT and to Kafka.
//
// A camera program would call buildMessage once per frame. This one sends one message to each
// broker and exits 0 once both brokers acknowledged it (MQTT PUBACK at QoS 1, Kafka acks=all),
// or exits 1 with the reason.
//
// Settings come from the environment (defaults suit the project's local brokers):
// MQTT_URL, KAFKA_BOOTSTRAP_SERVERS, MQTT_TOPIC, KAFKA_TOPIC, EVENT_ID_PREFIX, IMAGE, SCHEMA.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"
)

const timeout = 30 * time.Second

func setting(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// buildMessage returns a quality-check envelope: one scratch found on a 640x480 frame, the frame
// itself attached.
func buildMessage(eventID string, jpeg []byte) map[string]any {
	return map[string]any{
		"event_type":      "quality_check",
		"use_case":        "qc",
		"event_id":        eventID,
		"timestamp":       time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"device_id":       "cam-1",
		"qc_result":       "fail",
		"custom_metadata": map[string]any{"publisher": "go"},
		"predictions": map[string]any{
			"image": map[string]any{"width": 640, "height": 480},
			"predictions": []any{map[string]any{
				"x": 320, "y": 240, "width": 80, "height": 60,
				"confidence": 0.92, "class": "scratch", "class_id": 1,
			}},
		},
		"input_image": map[string]any{"base64": base64.StdEncoding.EncodeToString(jpeg)},
	}
}

// loadSchema compiles the message schema once.
func loadSchema(path string) (*jsonschema.Schema, error) {
	compiler := jsonschema.NewCompiler()
	compiler.DefaultDraft(jsonschema.Draft2020)
	return compiler.Compile(path)
}

// validate checks the message as the schema sees it: the JSON text, decoded again.
func validate(schema *jsonschema.Schema, payload []byte) error {
	document, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return err
	}
	return schema.Validate(document)
}

// publishMQTT publishes at QoS 1 and waits for the broker's PUBACK.
func publishMQTT(url, topic string, payload []byte) error {
	options := mqtt.NewClientOptions().
		AddBroker(strings.Replace(url, "mqtt://", "tcp://", 1)).
		SetClientID(fmt.Sprintf("example-publisher-%d", os.Getpid())).
		SetConnectTimeout(timeout)
	client := mqtt.NewClient(options)
	if token := client.Connect(); !token.WaitTimeout(timeout) || token.Error() != nil {
		return fmt.Errorf("cannot connect to the MQTT broker at %s: %v", url, token.Error())
	}
	defer client.Disconnect(250)
	token := client.Publish(topic, 1, false, payload)
	if !token.WaitTimeout(timeout) {
		return fmt.Errorf("the MQTT broker did not acknowledge the message within %s", timeout)
	}
	return token.Error()
}

// publishKafka produces with acks=all (franz-go's default) and waits for the broker's answer.
func publishKafka(bootstrap, topic, key string, payload []byte) error {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// As librdkafka and the Java client do where the broker allows it.
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	record := &kgo.Record{Topic: topic, Key: []byte(key), Value: payload}
	return client.ProduceSync(ctx, record).FirstErr()
}

func run() error {
	schema, err := loadSchema(setting("SCHEMA", "../../../schemas/inference-message.schema.json"))
	if err != nil {
		return err
	}
	jpeg, err := os.ReadFile(setting("IMAGE", "../frame.jpg"))
	if err != nil {
		return err
	}
	prefix := setting("EVENT_ID_PREFIX", "go-example")
	for _, transport := range []string{"mqtt", "kafka"} {
		eventID := prefix + "-" + transport
		payload, err := json.Marshal(buildMessage(eventID, jpeg))
		if err != nil {
			return err
		}
		// Refuse to publish what the consumer would dead-letter.
		if err := validate(schema, payload); err != nil {
			return fmt.Errorf("message does not match the schema: %w", err)
		}
		if transport == "mqtt" {
			err = publishMQTT(setting("MQTT_URL", "mqtt://127.0.0.1:1883"), setting("MQTT_TOPIC", "factory/go/inspection"), payload)
		} else {
			err = publishKafka(setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), setting("KAFKA_TOPIC", "factory.go.inspection"), "cam-1", payload)
		}
		if err != nil {
			return err
		}
		fmt.Printf("published %s to %s\n", eventID, transport)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
