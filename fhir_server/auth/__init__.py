"""Access tokens and scopes. The full SMART / Pro Santé Connect authorisation server builds on this."""
