"""Phone calls over SIP: provisioning LiveKit's SIP bridge; transferring a caller to a person."""
