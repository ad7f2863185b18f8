"""Local gateways speaking each channel's protocol with generated test keys (demo and tests only;
production settings refuse them)."""
