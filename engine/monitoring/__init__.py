"""What the engine watches while it trains: system metrics, samples, sinks, anomalies and recovery."""
