"""The bundled sample: real conversations (OASST, HH-RLHF) converted into SPEC §2 events."""
