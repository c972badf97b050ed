//! report (to be written)
