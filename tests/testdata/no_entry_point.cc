// A shared object that is not a task library: it lacks mpigate_register_tasks.
extern "C" int not_a_task_library() { return 0; }
