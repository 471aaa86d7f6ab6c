"""Optional compiled operations (currently: oneDNN convolutions on CPU, see `onednn`)."""
