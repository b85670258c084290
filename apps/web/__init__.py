"""The LAGCHand page: LiteRT artifacts in a browser with LiteRT.js (`lagchand-edge serve`)."""
