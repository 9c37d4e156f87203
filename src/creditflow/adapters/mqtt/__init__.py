"""MQTT adapters (paho-mqtt): the ingest subscriber that feeds `IngestPipeline`, and a device publisher."""

from creditflow.adapters.mqtt.client import (
    BareCounter,
    MqttIngest,
    MqttPublisher,
    parse_mqtt_url,
    telemetry_topic,
)

__all__ = ["BareCounter", "MqttIngest", "MqttPublisher", "parse_mqtt_url", "telemetry_topic"]
