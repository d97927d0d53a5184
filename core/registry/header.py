"""The comment at the top of every registry.toml zoo writes: the file's schema, documented where users
read it (README: "The registry")."""

HEADER = """\
zoo registry: every CoreML package zoo produced, with hashes and validation.
Written by `zoo export` (atomically, under registry.toml.lock); read by
`zoo list`, `zoo verify`, `zoo info` and `zoo run --backend mil|coreml`.
Edit by hand only while no export is running.

schema                       format version of this file
[[exports]]                  one table per successful export
  id                         unique export id: <model>-<variant>-<utc time>-<random>
  model                      model name (see `zoo list`)
  status                     "valid": every required validation level passed
  validation_level           highest level reached in order reference < mil < coreml
  created_at                 UTC time the export was registered
  path                       export directory, relative to this file when below it
  out                        the output root it was placed in (`zoo export --out`), relative
                             to this file when below it; zoo reads and deletes an export only
                             as <out>/<id> carrying its marker .zoo-export.json (the export id
                             and every file's sha256, written when it was published)
  inputs_sha256              sha256 of what the export was made from (model, plugin and
                             core sources, variant, weights, tool versions): `zoo export`
                             reuses a valid export with the same value instead of adding one
  [exports.plugin]           name, version and source sha256 of the plugin that made it
  [exports.variant]          name, precision (fp16|fp32), target (iOS17, ...), options
                             (shapes, buckets and other plugin-specific settings)
  [exports.weights]          kind = "hub" (repo, revision), "local" (path, sha256) or
                             "random" (seed; recorded as random(seed=N) in `describe`);
                             files = sha256 of every weights file read
  [exports.tools]            python, zoo, torch, coremltools, numpy versions
  [[exports.components]]     one per CoreML package:
    name, path               component name; package path relative to the export dir
    functions                the package's functions ("main" for a plain package)
    sha256, bytes            sha256 over the package tree (sorted relative paths,
                             sizes and bytes) and its total size
    files                    the package's files, relative to it (a missing one is named)
    compression              compressed variants: mode (w8, p6, p4), compressed_weights,
                             worst_weight_snr_db (the weights' own SNR after decompression),
                             output_snr_db (the outputs' SNR with those errors at random
                             signs: the gate's basis), predicted_snr_db (unit gain), kept
                             (weights the plugin keeps uncompressed), left (weights whose
                             shape the mode cannot take, left as they were), bytes_before/after
  [[exports.constants]]      name, path, sha256, bytes of each constants file
  [[exports.parity]]         per component: the parity inputs, torch outputs and initial
                             states (safetensors) that `zoo verify --execute` re-runs
  [[exports.validation]]     one record per level and component (and metric):
    level                    reference (traceable vs upstream, torch), mil (saved package
                             run by zoo's MIL interpreter), coreml (CoreML, macOS only)
    component, metric        what was compared and how: float64_rel / float64_spectral
                             (port and upstream both in float64), rel, cosine_min,
                             spectral_max (audio judged by its magnitude spectrogram), snr_db_min
                             (compressed packages: output SNR in dB),
                             <output>:mismatches (integer outputs after the loop's rounding;
                             compressed: <output>:moved and <output>:jumps),
                             max_abs; "execute" when the package could not be executed;
                             "loop:<name>": a whole utterance of the run loop vs upstream,
                             with what was compared in `detail` (README: "Validation")
    value, threshold         the measured worst case and the bound it must meet
    basis                    how a bound measured at export time was derived, with the
                             measurement (e.g. "rel ≤ 16 × upstream fp32 error 6.3e-07")
    worst                    worst max_abs, rel and cosine over all compared outputs
    status                   passed | failed | skipped
    reason                   why a level was skipped or failed; first non-finite op
  resources                  what making the export cost: peak_rss_mb (its largest process),
                             seconds; a matrix's Ray tasks ask for memory by it
  [[exports.eval]]           one per `zoo eval` of the export: asr (recogniser directory) and
                             asr_sha256, prompts (count) and prompts_sha256, languages, backend,
                             voice, seconds; quality_claim = false for random weights (nothing
                             else then), else export_wer / export_cer, reference_wer / _cer,
                             uncompressed_wer / _cer (compressed exports), qoi (share of prompts
                             where the export does no worse than the reference), qoi_vs_uncompressed,
                             per_prompt (id, metric, export_rate / reference_rate / uncompressed_rate)
"""
