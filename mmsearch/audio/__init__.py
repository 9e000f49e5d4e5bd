"""Audio: decoding into windows, sound-event tags (YAMNet), speech (Whisper), CLAP."""
