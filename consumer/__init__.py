"""vision-events-consumer: MQTT/Kafka inference results to Roboflow Vision Events."""

__version__ = "0.1.0"
