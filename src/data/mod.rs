//! data (to be written)
