"""The stages of an export, each a function of the stage runner (``export.stages.Stages``), the model
session and what earlier stages returned — data passes as arguments, never through attributes.

    parity:<component>    torch_side.reference_stage   the reference level: parity data, calibration
    constants             torch_side.constants_stage   export_constants
    loop_parity           torch_side.loop_parity_stage the plugin's whole-loop cases on the torch runtime
    convert:<component>   torch_side.convert_stage     convert (the core's default, or the plugin's)
    compress:<component>  compress.compress_stage      compressed variants (compression.policy decides)
    compress:constants    compress.compressed_constants_stage  the constants a model declares, as tables
    <level>:<component>   levels.package_level_stage   each package level (mil here, coreml on macOS)
    loop:(un)compressed   loops.*                      the run loop on both sets of packages
    eval:compressed       asr.compressed_eval_stage    --asr: QoI of the compressed packages
"""

from .asr import compressed_eval_stage, weights_speak
from .compress import compress_stage, compressed_constants_stage
from .levels import package_level_stage
from .loops import compressed_loop_stage, uncompressed_loop_stage
from .torch_side import constants_stage, convert_stage, loop_parity_stage, reference_stage

__all__ = [
    "compress_stage",
    "compressed_constants_stage",
    "compressed_eval_stage",
    "compressed_loop_stage",
    "constants_stage",
    "convert_stage",
    "loop_parity_stage",
    "package_level_stage",
    "reference_stage",
    "uncompressed_loop_stage",
    "weights_speak",
]
