"""`predict`: run a LAGCHand artifact on your own photos, videos or camera and see both hands.

Torch-free (numpy, Pillow, a runtime; OpenCV only for video files and cameras), so it runs on an
edge Linux device: `python3 -m apps.predict SOURCE --artifact DIR`. `lagchand-edge predict`
calls the same pipeline. One module each: sources, hand finding, decoding, drawing.
"""
