"""Programs built on lagchand-edge, and standalone ones to copy to devices."""
