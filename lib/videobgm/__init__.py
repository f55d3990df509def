"""videobgm: copyright-free background music that follows what a video says.

A video goes in; its speech is transcribed (Whisper), classified into 7 emotions per phrase,
smoothed into an emotion timeline, and each stretch gets music from Riffusion with a mood LoRA
(or from the procedural synthesiser), mixed under the isolated voice and muxed back.
"""

__version__ = "0.1.0"
