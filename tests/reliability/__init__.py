"""The red-team cases of the run folder, the protocol and the reports, kept as tests so that they stay fixed."""
