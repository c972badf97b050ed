//! quant (to be written)
