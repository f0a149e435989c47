"""What the coordinator sees and keeps: the preview and its gallery, the lint, the
report, the progress, and every file the tool writes."""
