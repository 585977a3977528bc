/* Random bytes as Claude Code's `-p --output-format stream-json` stdout, line by line
 * into task events (src/tasks/translate.c). */
#include "task_lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_task_lines(TASK_AGENT_CLAUDE, data, size);
}
