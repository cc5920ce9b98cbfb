"""Recording every layer's states over a text, and reading a recording back; the recorder's speed machinery lives here too."""
