"""The ZeroMQ pipeline: wire protocol, sources (camera, replay), the classifier worker and sinks.

Data flows one way: source --events--> classify --predictions (JSON)--> sinks (watch, serve's console).
PUB/SUB is for live fan-out (a slow consumer loses messages, counted from sequence gaps); PUSH/PULL is
for replay and evaluation (back-pressure, nothing lost). Every queue is bounded by a high-water mark.
"""
