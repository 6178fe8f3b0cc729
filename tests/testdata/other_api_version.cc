// Stands for a task library built against another version of worker/task.h: its entry point
// answers every worker's version with "not mine", as the real one does on a mismatch.
extern "C" int mpigate_register_tasks(void* /*registry*/, int /*api_version*/) { return 2; }
