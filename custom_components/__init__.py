"""Home Assistant custom integrations in this repository (HACS installs custom_components/camhub)."""
