//! ZIP extraction (next).
