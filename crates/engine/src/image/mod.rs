//! Images: root filesystem directories that sandboxes overlay.
