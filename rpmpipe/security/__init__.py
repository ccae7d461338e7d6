"""Broker security: certificates, Mosquitto password/ACL files, and the broker-config writer.

``certs`` and ``mosquitto`` are pure (values in, bytes/text out); ``broker_config`` is the
one module that reads the registry and writes files.
"""
