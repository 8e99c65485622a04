// DebugLog for bare-metal TFLM builds (TFLM's debug_log.cc is left out): silent. The builds strip TFLM's
// error strings (-DTF_LITE_STRIP_ERROR_STRINGS), and a failed AllocateTensors or Invoke reaches the host
// as the protocol's error (PV_ERR_MODEL), not as text on the UART, which carries frames only.
#include <cstdarg>
#include <cstddef>

#include "tensorflow/lite/micro/debug_log.h"

extern "C" void DebugLog(const char *format, va_list args) {
    (void)format;
    (void)args;
}

extern "C" int DebugVsnprintf(char *buffer, size_t buf_size, const char *format, va_list vlist) {
    (void)format;
    (void)vlist;
    if (buf_size > 0) buffer[0] = '\0';
    return 0;
}
