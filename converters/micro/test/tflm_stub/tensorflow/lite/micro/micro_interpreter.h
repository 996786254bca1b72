/* A stand-in for the part of TFLite Micro's C++ API that example_main.cc uses, written from TFLite Micro's
 * documented interface (tflite::GetModel, MicroInterpreter, TfLiteTensor). Only for a syntax check of
 * the generated example (g++ -fsyntax-only); it is not TFLite Micro and links nothing. */
#pragma once
#include <stddef.h>
#include <stdint.h>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteFloat32 = 1, kTfLiteInt8 = 9 } TfLiteType;
typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef union { float *f; int8_t *int8; } TfLitePtrUnion;
typedef struct { TfLiteType type; TfLitePtrUnion data; TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;
namespace tflite {
struct Model {};
const Model *GetModel(const void *buf);
class MicroOpResolver {};
class MicroInterpreter {
 public:
  MicroInterpreter(const Model *model, const MicroOpResolver &resolver, uint8_t *arena, size_t arena_size);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor *input(size_t index);
  TfLiteTensor *output(size_t index);
};
}  // namespace tflite
