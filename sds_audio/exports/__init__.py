"""Exports of presets to the formats sound designers load elsewhere, one module per format.

* :mod:`sds_audio.exports.syx`: DX7 voices, single-voice (VCED) and 32-voice bank (VMEM)
  system-exclusive files (read and write);
* :mod:`sds_audio.exports.dx7_fit`: a preset of another synth (FMSynth) fitted to the nearest
  DX7 voice by spectral matching, so it can go into a bank;
* :mod:`sds_audio.exports.sfz`: a preset rendered across the keyboard as an SFZ instrument;
* :mod:`sds_audio.exports.loop`: loop points and envelope analysis for the SFZ samples.
"""
