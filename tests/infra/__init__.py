"""Test infrastructure: real dockerd, podman, CDI specs and small images built from host files.

Modules: dockerd (start_dockerd, DockerDaemon), image (build_rootfs, import_image, build_image),
podman (start_podman, Podman, podman_run, cdi_spec_installed), system (shared host helpers).
"""
