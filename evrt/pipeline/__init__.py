"""The ZeroMQ pipeline: wire protocol, sources (camera, replay), the classifier worker and sinks.

Data flows one way::

    evrt source --camera SPEC --bind ADDR   --events-->   evrt classify --model M --connect ADDR --publish ADDR2
                                                          --predictions [b"pred", JSON]-->   evrt watch --connect ADDR2

    evrt serve --camera SPEC --model M       (all three in one process, joined by inproc:// sockets)

Patterns: PUB/SUB for live fan-out (a slow consumer loses messages; receivers count them from sequence
gaps), PUSH/PULL for replay and evaluation (back-pressure; nothing lost; one consumer per source).
Every socket has a high-water mark (``--hwm``), so memory stays flat whatever the consumer's speed.
Addresses default to 127.0.0.1; ``--curve-keys DIR`` (keys from ``evrt keys DIR``) encrypts and admits
only authorised clients. Modules:

- ``protocol``  two-frame messages (binary header + raw events), strict ``decode``, drop reasons
- ``source``    camera / DV stream / recording sources, sensor mapping, ``Publisher``, ``publish``
- ``classify``  ``ClassifyWorker``: receive, track streams, frame + step (``evrt.streaming``), publish
- ``sockets``   addresses, HWM/linger, CURVE keys and authenticator, draining on exit
- ``metrics``   logs (text or JSON lines), the periodic metrics line, signal handling
- ``testing``   synthetic streams, a fake session and thread helpers for tests and benchmarks
"""
