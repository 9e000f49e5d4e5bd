"""Model families behind one interface (see base.Encoder) and a registry."""
