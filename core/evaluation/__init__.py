"""Quality you can hear: ASR-scored evaluation (prompts, normalisation, WER/CER, QoI).

May import (pyproject's layer contract), the sub-packages below it:
run, registry, host, compression, validation, runtime, mil, coreml, kit, plugin, util."""
