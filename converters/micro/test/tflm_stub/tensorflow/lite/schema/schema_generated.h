#pragma once /* stand-in: the schema types come with micro_interpreter.h */
