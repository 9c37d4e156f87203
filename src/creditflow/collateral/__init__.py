"""IoT-monitored collateral: assets, devices and signed telemetry over MQTT, the rules (one registry), alarms, live valuation against loans and pledges."""
