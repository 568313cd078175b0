"""A local stand-in for Twilio's Programmable Messaging API (the Messages resource), so the SMS channel
is tested through the official ``twilio`` SDK with no network: see app.py."""
