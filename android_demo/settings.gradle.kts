// tflbayes Android demo: a plain-Java uncertainty library (uq, tested on any JVM) and a thin app shell.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "tflbayes-android-demo"
include(":uq", ":app")
