"""placeholder"""
class LatentSynth:  # replaced below
    pass
