"""OS integration templates for `relais install` (systemd user service, XDG autostart)."""
