"""The machinery every method's run goes through: the launcher, the ``Run`` and its folder, the run's own
process and the kernel's watcher, process groups, the device lease and the callbacks that report progress."""
